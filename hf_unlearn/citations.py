"""BibTeX entries for the model card: the two seed papers always, and the source of every metric family
a report contains (TOFU, MUSE and OpenUnlearning, Min-K%, Min-K%++, SalUn, the Anamnesis Index and SCRUB's relearn time)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    key: str
    kind: str  # BibTeX entry type
    title: str
    authors: tuple[str, ...]
    year: int
    eprint: str  # arXiv id
    venue: str | None = None  # journal or booktitle
    note: str | None = None

    def bibtex(self) -> str:
        fields = {
            "title": self.title,
            "author": " and ".join(self.authors),
            "year": str(self.year),
            ("journal" if self.kind == "article" else "booktitle"): self.venue,
            "eprint": self.eprint,
            "archivePrefix": "arXiv",
            "url": f"https://arxiv.org/abs/{self.eprint}",
            "note": self.note,
        }
        body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields.items() if value)
        return f"@{self.kind}{{{self.key},\n{body}\n}}"


DING_2025 = Reference(
    key="ding2025understanding",
    kind="article",
    title="Understanding Fine-tuning in Approximate Unlearning: A Theoretical Perspective",
    authors=("Meng Ding", "Rohan Sharma", "Changyou Chen", "Jinhui Xu", "Kaiyi Ji"),
    year=2025,
    venue="Transactions on Machine Learning Research",
    eprint="2410.03833",
    note="v1 (2024): Why Fine-Tuning Struggles with Forgetting in Machine Unlearning? Theoretical Insights "
    "and a Remedial Approach, which introduced the discriminative regularization (dr)",
)
TRAN_2026 = Reference(
    key="tran2026efficient",
    kind="inproceedings",
    title="Efficient Unlearning through Maximizing Relearning Convergence Delay",
    authors=("Khoa Tran", "Simon S. Woo"),
    year=2026,
    venue="Findings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)",
    eprint="2604.09391",
)
TOFU = Reference(
    key="maini2024tofu",
    kind="inproceedings",
    title="TOFU: A Task of Fictitious Unlearning for LLMs",
    authors=("Pratyush Maini", "Zhili Feng", "Avi Schwarzschild", "Zachary C. Lipton", "J. Zico Kolter"),
    year=2024,
    venue="Conference on Language Modeling (COLM)",
    eprint="2401.06121",
)
MUSE = Reference(
    key="shi2025muse",
    kind="inproceedings",
    title="MUSE: Machine Unlearning Six-Way Evaluation for Language Models",
    authors=(
        "Weijia Shi",
        "Jaechan Lee",
        "Yangsibo Huang",
        "Sadhika Malladi",
        "Jieyu Zhao",
        "Ari Holtzman",
        "Daogao Liu",
        "Luke Zettlemoyer",
        "Noah A. Smith",
        "Chiyuan Zhang",
    ),
    year=2025,
    venue="International Conference on Learning Representations (ICLR)",
    eprint="2407.06460",
)
OPEN_UNLEARNING = Reference(
    key="dorna2025openunlearning",
    kind="article",
    title="OpenUnlearning: Accelerating LLM Unlearning via Unified Benchmarking of Methods and Metrics",
    authors=(
        "Vineeth Dorna",
        "Anmol Mekala",
        "Wenlong Zhao",
        "Andrew McCallum",
        "Zachary C. Lipton",
        "J. Zico Kolter",
        "Pratyush Maini",
    ),
    year=2025,
    venue="arXiv preprint",
    eprint="2506.12618",
    note="the reference code whose TOFU and MUSE metric definitions hf_unlearn follows (docs/metrics.md)",
)
MIN_K = Reference(
    key="shi2024detecting",
    kind="inproceedings",
    title="Detecting Pretraining Data from Large Language Models",
    authors=(
        "Weijia Shi",
        "Anirudh Ajith",
        "Mengzhou Xia",
        "Yangsibo Huang",
        "Daogao Liu",
        "Terra Blevins",
        "Danqi Chen",
        "Luke Zettlemoyer",
    ),
    year=2024,
    venue="International Conference on Learning Representations (ICLR)",
    eprint="2310.16789",
)
MIN_K_PLUS_PLUS = Reference(
    key="zhang2025mink",
    kind="inproceedings",
    title="Min-K%++: Improved Baseline for Detecting Pre-Training Data from Large Language Models",
    authors=(
        "Jingyang Zhang",
        "Jingwei Sun",
        "Eric Yeats",
        "Yang Ouyang",
        "Martin Kuo",
        "Jianyi Zhang",
        "Hao Frank Yang",
        "Hai Li",
    ),
    year=2025,
    venue="International Conference on Learning Representations (ICLR)",
    eprint="2404.02936",
)
SALUN = Reference(
    key="fan2024salun",
    kind="inproceedings",
    title="SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image "
    "Classification and Generation",
    authors=("Chongyu Fan", "Jiancheng Liu", "Yihua Zhang", "Eric Wong", "Dennis Wei", "Sijia Liu"),
    year=2024,
    venue="International Conference on Learning Representations (ICLR)",
    eprint="2310.12508",
)
ANAMNESIS = Reference(
    key="chundawat2023zero",
    kind="article",
    title="Zero-Shot Machine Unlearning",
    authors=("Vikram S. Chundawat", "Ayush K. Tarun", "Murari Mandal", "Mohan Kankanhalli"),
    year=2023,
    venue="IEEE Transactions on Information Forensics and Security",
    eprint="2201.05629",
    note="the Anamnesis Index, which rcd/ratio_to_golden follows",
)

SCRUB = Reference(
    key="kurmanji2023towards",
    kind="inproceedings",
    title="Towards Unbounded Machine Unlearning",
    authors=("Meghdad Kurmanji", "Peter Triantafillou", "Jamie Hayes", "Eleni Triantafillou"),
    year=2023,
    venue="Advances in Neural Information Processing Systems (NeurIPS)",
    eprint="2302.09880",
    note="SCRUB's relearn time, which rcd/steps follows",
)

SEED_PAPERS = (DING_2025, TRAN_2026)
# (metric key prefixes or keys that a report contains, the reference that defines them)
METRIC_SOURCES = (
    (("forget/truth_ratio", "forget_quality/truth_ratio_ks_pvalue", "utility/model_utility"), TOFU),
    (("privleak",), MUSE),
    (
        ("forget/truth_ratio", "forget/extraction_strength", "forget/exact_memorization", "privleak"),
        OPEN_UNLEARNING,
    ),
    (("mia/min_k_auc", "mia/min_k_04_auc"), MIN_K),
    (("mia/min_k_plus_plus_auc",), MIN_K_PLUS_PLUS),
    (("forget/ua", "mia/efficacy", "gap/average"), SALUN),
    (("rcd/ratio_to_golden", "rcd/ratio_to_heldout"), ANAMNESIS),
    (("rcd/steps",), SCRUB),
)


def references_for(metric_keys: set[str]) -> list[Reference]:
    """The seed papers, then the source of each metric family present in ``metric_keys``."""
    cited = [ref for keys, ref in METRIC_SOURCES if any(key in metric_keys for key in keys)]
    return [*SEED_PAPERS, *cited]


def bibtex(metric_keys: set[str]) -> str:
    """One BibTeX block with ``references_for(metric_keys)``."""
    return "\n\n".join(ref.bibtex() for ref in references_for(metric_keys))
