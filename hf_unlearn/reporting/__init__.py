"""What a run reports: the Hub model card (``card``), its citations (``citations`` + ``references.bib``), the
headline keys and their definitions (``headline``), and the plots with their palette (``plots``, ``palette``)."""
