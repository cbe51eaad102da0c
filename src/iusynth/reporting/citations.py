"""The works the methods text cites: the papers reproduced, the tools, the metrics and the data.

Each entry is written once here and rendered both as BibTeX (``citations.bib``) and as a
plain reference line (the Markdown methods text). Names are UTF-8.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    """One citable work."""

    key: str
    kind: str  # BibTeX entry type: article, inproceedings, misc
    authors: tuple[str, ...]  # "Last, First" each; "others" closes a shortened list
    title: str
    venue: str  # journal, proceedings or publisher
    year: int
    doi: str | None = None
    volume: str | None = None
    number: str | None = None
    pages: str | None = None
    note: str | None = None
    url: str | None = None

    def bibtex_fields(self) -> list[tuple[str, str]]:
        """(field, value) pairs of the BibTeX entry, in a fixed order."""
        venue_field = {"article": "journal", "inproceedings": "booktitle"}.get(
            self.kind, "publisher"
        )
        fields = [
            ("author", " and ".join(self.authors)),
            ("title", "{" + _bib_text(self.title) + "}"),
            (venue_field, _bib_text(self.venue)),
            ("year", str(self.year)),
        ]
        for name in ("volume", "number", "pages", "doi", "url", "note"):
            value = getattr(self, name)
            if value:
                if name == "pages":
                    value = value.replace("--", "-").replace("-", "--")
                elif name == "note":
                    value = _bib_text(value)
                fields.append((name, value))
        return fields

    def plain(self) -> str:
        """A reference line: authors, title, venue, details, year, DOI."""
        names = [name for name in self.authors if name != "others"]
        shown = [_short_name(name) for name in names[:6]]
        if len(names) > 6 or "others" in self.authors:
            shown.append("et al.")
        details = self.venue
        if self.volume:
            details += f" {self.volume}"
            if self.number:
                details += f"({self.number})"
        if self.pages:
            details += f", {self.pages.replace('--', '-')}"
        authors = ", ".join(shown).removesuffix(".")
        text = f"{authors}. {self.title}. {details} ({self.year})."
        if self.doi:
            text += f" https://doi.org/{self.doi}"
        elif self.url:
            text += f" {self.url}"
        if self.note:
            text += f" {self.note}."
        return text


def _bib_text(text: str) -> str:
    """Text of a BibTeX field with LaTeX's special characters escaped."""
    return text.replace("&", r"\&").replace("%", r"\%").replace("_", r"\_")


def _short_name(name: str) -> str:
    """``Dorent, Reuben`` -> ``Dorent R``."""
    last, _, first = name.partition(", ")
    initials = "".join(part[0] for part in first.replace("-", " ").split() if part)
    return f"{last} {initials}".strip()


REFERENCES: dict[str, Reference] = {
    reference.key: reference
    for reference in (
        Reference(
            key="dorent2023mhvae",
            kind="inproceedings",
            authors=(
                "Dorent, Reuben",
                "Haouchine, Nazim",
                "Kogl, Fryderyk",
                "Joutard, Samuel",
                "Juvekar, Parikshit",
                "Torio, Erickson",
                "Golby, Alexandra J.",
                "Ourselin, Sebastien",
                "Frisken, Sarah",
                "Vercauteren, Tom",
                "Kapur, Tina",
                "Wells, William M.",
            ),
            title=(
                "Unified Brain MR-Ultrasound Synthesis Using Multi-modal Hierarchical "
                "Representations"
            ),
            venue="Medical Image Computing and Computer Assisted Intervention (MICCAI 2023)",
            year=2023,
            pages="448--458",
            doi="10.1007/978-3-031-43999-5_43",
        ),
        Reference(
            key="dorent2024mmhvae",
            kind="article",
            authors=(
                "Dorent, Reuben",
                "Haouchine, Nazim",
                "Golby, Alexandra",
                "Frisken, Sarah",
                "Kapur, Tina",
                "Wells, William",
            ),
            title=(
                "Unified Cross-Modal Image Synthesis with Hierarchical Mixture of "
                "Product-of-Experts"
            ),
            venue="arXiv preprint arXiv:2410.19378",
            year=2024,
            doi="10.48550/arXiv.2410.19378",
        ),
        Reference(
            key="modat2014niftyreg",
            kind="article",
            authors=(
                "Modat, Marc",
                "Cash, David M.",
                "Daga, Pankaj",
                "Winston, Gavin P.",
                "Duncan, John S.",
                "Ourselin, Sébastien",
            ),
            title="Global image registration using a symmetric block-matching approach",
            venue="Journal of Medical Imaging",
            year=2014,
            volume="1",
            number="2",
            pages="024003",
            doi="10.1117/1.JMI.1.2.024003",
        ),
        Reference(
            key="ourselin2001blockmatching",
            kind="article",
            authors=(
                "Ourselin, Sébastien",
                "Roche, Alexis",
                "Subsol, Gérard",
                "Pennec, Xavier",
                "Ayache, Nicholas",
            ),
            title="Reconstructing a 3D structure from serial histological sections",
            venue="Image and Vision Computing",
            year=2001,
            volume="19",
            number="1-2",
            pages="25--31",
            doi="10.1016/S0262-8856(00)00052-4",
        ),
        Reference(
            key="isensee2021nnunet",
            kind="article",
            authors=(
                "Isensee, Fabian",
                "Jaeger, Paul F.",
                "Kohl, Simon A. A.",
                "Petersen, Jens",
                "Maier-Hein, Klaus H.",
            ),
            title=(
                "nnU-Net: a self-configuring method for deep learning-based biomedical image "
                "segmentation"
            ),
            venue="Nature Methods",
            year=2021,
            volume="18",
            number="2",
            pages="203--211",
            doi="10.1038/s41592-020-01008-z",
        ),
        Reference(
            key="zhang2018lpips",
            kind="inproceedings",
            authors=(
                "Zhang, Richard",
                "Isola, Phillip",
                "Efros, Alexei A.",
                "Shechtman, Eli",
                "Wang, Oliver",
            ),
            title="The Unreasonable Effectiveness of Deep Features as a Perceptual Metric",
            venue="IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)",
            year=2018,
            pages="586--595",
            doi="10.1109/CVPR.2018.00068",
        ),
        Reference(
            key="wang2004ssim",
            kind="article",
            authors=(
                "Wang, Zhou",
                "Bovik, Alan C.",
                "Sheikh, Hamid R.",
                "Simoncelli, Eero P.",
            ),
            title="Image quality assessment: from error visibility to structural similarity",
            venue="IEEE Transactions on Image Processing",
            year=2004,
            volume="13",
            number="4",
            pages="600--612",
            doi="10.1109/TIP.2003.819861",
        ),
        Reference(
            key="isola2017pix2pix",
            kind="inproceedings",
            authors=("Isola, Phillip", "Zhu, Jun-Yan", "Zhou, Tinghui", "Efros, Alexei A."),
            title="Image-to-Image Translation with Conditional Adversarial Networks",
            venue="IEEE Conference on Computer Vision and Pattern Recognition (CVPR)",
            year=2017,
            pages="1125--1134",
            doi="10.1109/CVPR.2017.632",
        ),
        Reference(
            key="sharma2020mmgan",
            kind="article",
            authors=("Sharma, Anmol", "Hamarneh, Ghassan"),
            title=(
                "Missing MRI Pulse Sequence Synthesis Using Multi-Modal Generative "
                "Adversarial Network"
            ),
            venue="IEEE Transactions on Medical Imaging",
            year=2020,
            volume="39",
            number="4",
            pages="1170--1183",
            doi="10.1109/TMI.2019.2945521",
        ),
        Reference(
            key="dalmaz2022resvit",
            kind="article",
            authors=("Dalmaz, Onat", "Yurt, Mahmut", "Çukur, Tolga"),
            title="ResViT: Residual Vision Transformers for Multimodal Medical Image Synthesis",
            venue="IEEE Transactions on Medical Imaging",
            year=2022,
            volume="41",
            number="10",
            pages="2598--2614",
            doi="10.1109/TMI.2022.3167808",
        ),
        Reference(
            key="meng2024m2dn",
            kind="article",
            authors=(
                "Meng, Xiangxi",
                "Sun, Kaicong",
                "Xu, Jun",
                "He, Xuming",
                "Shen, Dinggang",
            ),
            title=(
                "Multi-Modal Modality-Masked Diffusion Network for Brain MRI Synthesis With "
                "Random Modality Missing"
            ),
            venue="IEEE Transactions on Medical Imaging",
            year=2024,
        ),
        Reference(
            key="park2019spade",
            kind="inproceedings",
            authors=("Park, Taesung", "Liu, Ming-Yu", "Wang, Ting-Chun", "Zhu, Jun-Yan"),
            title="Semantic Image Synthesis with Spatially-Adaptive Normalization",
            venue="IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)",
            year=2019,
            pages="2337--2346",
            doi="10.1109/CVPR.2019.00244",
        ),
        Reference(
            key="wu2018mvae",
            kind="inproceedings",
            authors=("Wu, Mike", "Goodman, Noah"),
            title="Multimodal Generative Models for Scalable Weakly-Supervised Learning",
            venue="Advances in Neural Information Processing Systems (NeurIPS)",
            year=2018,
            volume="31",
        ),
        Reference(
            key="sutter2021mopoe",
            kind="inproceedings",
            authors=("Sutter, Thomas M.", "Daunhawer, Imant", "Vogt, Julia E."),
            title="Generalized Multimodal ELBO",
            venue="International Conference on Learning Representations (ICLR)",
            year=2021,
        ),
        Reference(
            key="paszke2019pytorch",
            kind="inproceedings",
            authors=("Paszke, Adam", "Gross, Sam", "Massa, Francisco", "others"),
            title="PyTorch: An Imperative Style, High-Performance Deep Learning Library",
            venue="Advances in Neural Information Processing Systems (NeurIPS)",
            year=2019,
            volume="32",
            pages="8024--8035",
        ),
        Reference(
            key="molder2021snakemake",
            kind="article",
            authors=(
                "Mölder, Felix",
                "Jablonski, Kim Philipp",
                "Letcher, Brice",
                "Hall, Michael B.",
                "Tomkins-Tinch, Christopher H.",
                "Sochat, Vanessa",
                "Forster, Jan",
                "Lee, Soohyun",
                "Twardziok, Sven O.",
                "Kanitz, Alexander",
                "Wilm, Andreas",
                "Holtgrewe, Manuel",
                "Rahmann, Sven",
                "Nahnsen, Sven",
                "Köster, Johannes",
            ),
            title="Sustainable data analysis with Snakemake",
            venue="F1000Research",
            year=2021,
            volume="10",
            pages="33",
            doi="10.12688/f1000research.29032.2",
        ),
        Reference(
            key="gorgolewski2011nipype",
            kind="article",
            authors=(
                "Gorgolewski, Krzysztof",
                "Burns, Christopher D.",
                "Madison, Cindee",
                "others",
            ),
            title=(
                "Nipype: a flexible, lightweight and extensible neuroimaging data processing "
                "framework in Python"
            ),
            venue="Frontiers in Neuroinformatics",
            year=2011,
            volume="5",
            pages="13",
            doi="10.3389/fninf.2011.00013",
        ),
        Reference(
            key="fonov2011mni",
            kind="article",
            authors=(
                "Fonov, Vladimir",
                "Evans, Alan C.",
                "Botteron, Kelly",
                "Almli, C. Robert",
                "McKinstry, Robert C.",
                "Collins, D. Louis",
            ),
            title="Unbiased average age-appropriate atlases for pediatric studies",
            venue="NeuroImage",
            year=2011,
            volume="54",
            number="1",
            pages="313--327",
            doi="10.1016/j.neuroimage.2010.07.033",
        ),
        Reference(
            key="abraham2014nilearn",
            kind="article",
            authors=("Abraham, Alexandre", "Pedregosa, Fabian", "Eickenberg, Michael", "others"),
            title="Machine learning for neuroimaging with scikit-learn",
            venue="Frontiers in Neuroinformatics",
            year=2014,
            volume="8",
            pages="14",
            doi="10.3389/fninf.2014.00014",
        ),
        Reference(
            key="juvekar2023remind_data",
            kind="misc",
            authors=("Juvekar, Parikshit", "Dorent, Reuben", "Kögl, Fryderyk", "others"),
            title="The Brain Resection Multimodal Imaging Database (ReMIND)",
            venue="The Cancer Imaging Archive",
            year=2023,
            doi="10.7937/3RAG-D070",
            note="Data set, licence CC BY 4.0",
        ),
        Reference(
            key="juvekar2024remind",
            kind="article",
            authors=("Juvekar, Parikshit", "Dorent, Reuben", "Kögl, Fryderyk", "others"),
            title="ReMIND: The Brain Resection Multimodal Imaging Database",
            venue="Scientific Data",
            year=2024,
            volume="11",
            pages="494",
            doi="10.1038/s41597-024-03295-z",
        ),
        Reference(
            key="bakas2021upenn_data",
            kind="misc",
            authors=("Bakas, Spyridon", "others"),
            title=(
                "Multi-parametric magnetic resonance imaging (mpMRI) scans for de novo "
                "Glioblastoma (GBM) patients from the University of Pennsylvania Health System "
                "(UPENN-GBM)"
            ),
            venue="The Cancer Imaging Archive",
            year=2021,
            doi="10.7937/TCIA.709X-DN49",
            note="Data set, licence CC BY 4.0",
        ),
        Reference(
            key="bakas2022upenn",
            kind="article",
            authors=("Bakas, Spyridon", "Sako, Chiharu", "Akbari, Hamed", "others"),
            title=(
                "The University of Pennsylvania glioblastoma (UPenn-GBM) cohort: advanced MRI, "
                "clinical, genomics, & radiomics"
            ),
            venue="Scientific Data",
            year=2022,
            volume="9",
            pages="453",
            doi="10.1038/s41597-022-01560-7",
        ),
        Reference(
            key="xiao2017resect",
            kind="article",
            authors=(
                "Xiao, Yiming",
                "Fortin, Maryse",
                "Unsgård, Geirmund",
                "Rivaz, Hassan",
                "Reinertsen, Ingerid",
            ),
            title=(
                "REtroSpective Evaluation of Cerebral Tumors (RESECT): A clinical database of "
                "pre-operative MRI and intra-operative ultrasound in low-grade glioma surgeries"
            ),
            venue="Medical Physics",
            year=2017,
            volume="44",
            number="7",
            pages="3875--3882",
            doi="10.1002/mp.12268",
        ),
        Reference(
            key="xiao2017resect_data",
            kind="misc",
            authors=(
                "Xiao, Yiming",
                "Fortin, Maryse",
                "Unsgård, Geirmund",
                "Rivaz, Hassan",
                "Reinertsen, Ingerid",
            ),
            title="RESECT: REtroSpective Evaluation of Cerebral Tumors",
            venue="NIRD Research Data Archive (Sigma2)",
            year=2017,
            doi="10.11582/2017.00004",
            note="Data set, licence CC BY 4.0",
        ),
        Reference(
            key="behboodi2022resectseg",
            kind="article",
            authors=(
                "Behboodi, Bahareh",
                "Carton, François-Xavier",
                "Chabanas, Matthieu",
                "de Ribaupierre, Sandrine",
                "Solheim, Ole",
                "Munkvold, Bodil K. R.",
                "Rivaz, Hassan",
                "Xiao, Yiming",
                "Reinertsen, Ingerid",
            ),
            title=(
                "RESECT-SEG: Open access annotations of intra-operative brain tumor "
                "ultrasound images"
            ),
            venue="arXiv preprint arXiv:2207.07494",
            year=2022,
            doi="10.48550/arXiv.2207.07494",
            note="Annotations on OSF (https://osf.io/jv8bk), licence CC BY-NC-SA 4.0",
        ),
        Reference(
            key="clark2013tcia",
            kind="article",
            authors=("Clark, Kenneth", "Vendt, Bruce", "Smith, Kirk", "others"),
            title=(
                "The Cancer Imaging Archive (TCIA): Maintaining and Operating a Public "
                "Information Repository"
            ),
            venue="Journal of Digital Imaging",
            year=2013,
            volume="26",
            number="6",
            pages="1045--1057",
            doi="10.1007/s10278-013-9622-7",
        ),
        Reference(
            key="fedorov2023idc",
            kind="article",
            authors=("Fedorov, Andrey", "Longabaugh, William J. R.", "Pot, David", "others"),
            title=(
                "National Cancer Institute Imaging Data Commons: Toward Transparency, "
                "Reproducibility, and Scalability in Imaging Artificial Intelligence"
            ),
            venue="RadioGraphics",
            year=2023,
            volume="43",
            number="12",
            pages="e230180",
            doi="10.1148/rg.230180",
        ),
    )
}
