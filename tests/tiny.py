"""Tiny corpora, tokenizers and a random BERT built by the tests: nothing is downloaded."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from training.config import RECIPES_DIR, TopicConfig, load_config

# (token, tag) sentences written for the tests; PERS is the corpus' spelling of PER.
SENTENCES: list[list[tuple[str, str]]] = [
    [("زار", "O"), ("الرئيس", "O"), ("ماكرون", "B-PERS"), ("بيروت", "B-LOC"), (".", "O")],
    [
        ("قال", "O"),
        ("أحمد", "B-PERS"),
        ("سعيد", "I-PERS"),
        ("إن", "O"),
        ("الأمم", "B-ORG"),
        ("المتحدة", "I-ORG"),
        ("تدعم", "O"),
        ("لبنان", "B-LOC"),
        (".", "O"),
    ],
    [
        ("وصل", "O"),
        ("الوفد", "O"),
        ("إلى", "O"),
        ("القاهرة", "B-LOC"),
        ("صباح", "O"),
        ("اليوم", "O"),
        (".", "O"),
    ],
    [
        ("فاز", "O"),
        ("نادي", "B-ORG"),
        ("الأهلي", "I-ORG"),
        ("بكأس", "O"),
        ("أفريقيا", "B-MISC"),
        (".", "O"),
    ],
    [
        ("التقى", "O"),
        ("بوتين", "B-PERS"),
        ("زيلينسكي", "B-PERS"),
        ("في", "O"),
        ("إسطنبول", "B-LOC"),
        (".", "O"),
    ],
    [
        ("أعلنت", "O"),
        ("شركة", "O"),
        ("أرامكو", "B-ORG"),
        ("أرباحها", "O"),
        ("(2024)", "O"),
        (".", "O"),
    ],
    [
        ("غادر", "O"),
        ("محمد", "B-PERS"),
        ("عمان", "B-LOC"),
        ("متجها", "O"),
        ("إلى", "O"),
        ("دمشق", "B-LOC"),
        (".", "O"),
    ],
    [
        ("ذكرت", "O"),
        ("وكالة", "B-ORG"),
        ("رويترز", "I-ORG"),
        ("أن", "O"),
        ("الاجتماع", "O"),
        ("انتهى", "O"),
        (".", "O"),
    ],
]

ARTICLES: list[dict[str, str]] = [
    {
        "source": "skynews",
        "section": "middleEast",
        "title": "غارات على غزة",
        "text": "قصفت طائرات حربية مواقع في غزة وقتل عدد من المدنيين في الحرب.",
    },
    {
        "source": "skynews",
        "section": "internationalNews",
        "title": "انتخابات في فرنسا",
        "text": "يتوجه الناخبون في فرنسا إلى صناديق الاقتراع لاختيار رئيس جديد.",
    },
    {
        "source": "bbc",
        "section": "sport",
        "title": "الأهلي يفوز",
        "text": "فاز نادي الأهلي على منافسه بهدفين في مباراة كرة القدم.",
    },
    {
        "source": "bbc",
        "section": "economy",
        "title": "أسعار النفط",
        "text": "ارتفعت أسعار النفط في الأسواق العالمية مع زيادة الطلب والاستثمار.",
    },
    {
        "source": "cnn",
        "section": "technology",
        "title": "هاتف جديد",
        "text": "كشفت الشركة عن هاتف ذكي جديد بكاميرا وتطبيقات للذكاء الاصطناعي.",
    },
    {
        "source": "alarabia",
        "section": "culture",
        "title": "مهرجان السينما",
        "text": "افتتح مهرجان السينما دورته الجديدة بعرض فيلم عن الفن والموسيقى.",
    },
    {
        "source": "alarabia",
        "section": "internationalNews",
        "title": "محادثات في جنيف",
        "text": "بدأت في جنيف محادثات بين روسيا وأوكرانيا لوقف الحرب في دونباس.",
    },
    {
        "source": "cnn",
        "section": "middleEast",
        "title": "الحرب في اليمن",
        "text": "تواصلت المعارك في اليمن بين الحوثيين وقوات التحالف العربي.",
    },
    {
        "source": "skynews",
        "section": "sport",
        "title": "كأس العالم",
        "text": "تستعد المنتخبات لبطولة كأس العالم لكرة القدم في روسيا.",
    },
    {
        "source": "bbc",
        "section": "technology",
        "title": "شبكات الجيل الخامس",
        "text": "تطلق شركات الاتصالات شبكات الجيل الخامس للإنترنت السريع.",
    },
    {
        "source": "skynews",
        "section": "economy",
        "title": "البورصة",
        "text": "أغلقت البورصة على ارتفاع بعد قرار البنك المركزي خفض الفائدة.",
    },
    {
        "source": "cnn",
        "section": "internationalNews",
        "title": "قمة في بروكسل",
        "text": "عقد قادة الاتحاد الأوروبي قمة في بروكسل لبحث الهجرة.",
    },
]

POSTS = [
    "الاحتلال يقصف غزة والحرب مستمرة على القطاع",
    "وقف إطلاق النار في غزة ما زال بعيدا بحسب الوسطاء",
    "ضحايا جدد في قصف على رفح جنوب قطاع غزة",
]


def write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    """Write sentences in CoNLL form."""
    lines = []
    for sentence in sentences:
        lines += [f"{token} {tag}" for token, tag in sentence] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_corpora(root: Path) -> dict[str, Path]:
    """Write the tiny entity and topic corpora under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {
        "ner_train": write_conll(root / "ner_train.txt", SENTENCES * 3),
        "ner_test": write_conll(root / "ner_test.txt", SENTENCES[:4]),
    }
    ant = root / "ant.jsonl"
    with ant.open("w", encoding="utf-8") as handle:
        for copy in range(3):
            for index, article in enumerate(ARTICLES):
                record = dict(article, id=f"a{copy}-{index}", date="2018-01-01", abstract="")
                # Distinct texts so that de-duplication keeps every copy.
                record["text"] = article["text"] + f" ({copy})"
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    paths["ant"] = ant
    fignews = root / "fignews.jsonl"
    with fignews.open("w", encoding="utf-8") as handle:
        for index, text in enumerate(POSTS):
            handle.write(
                json.dumps(
                    {"id": str(index), "source_language": "Arabic", "text": text},
                    ensure_ascii=False,
                )
                + "\n"
            )
    paths["fignews"] = fignews
    return paths


def corpus_words() -> list[str]:
    """Every word the tiny corpora use (for tiny vocabularies)."""
    from serving.tokenise import split_words

    texts = [" ".join(t for t, _ in s) for s in SENTENCES]
    texts += [a["title"] + " " + a["text"] for a in ARTICLES] + POSTS
    words = sorted({w.text for t in texts for w in split_words(t)})
    return words


def build_wordpiece_tokenizer(directory: Path) -> None:
    """A tiny WordPiece tokenizer (AraBERT's family) saved as a transformers tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = corpus_words()
    chars = sorted({c for w in words for c in w})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab_list = specials + chars + ["##" + c for c in chars] + words[: len(words) // 2]
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys(vocab_list))}
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(directory)


def build_unigram_tokenizer(directory: Path) -> None:
    """A tiny SentencePiece/Unigram tokenizer (e5's family) saved as a transformers tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = corpus_words()
    chars = sorted({c for w in words for c in w})
    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -5.0) for c in chars] + [("▁" + c, -5.5) for c in chars]
    pieces += [("▁" + w, -3.0) for w in words[::2]] + [("<mask>", 0.0)]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=3, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        mask_token="<mask>",
        bos_token="<s>",
        eos_token="</s>",
    )
    fast.save_pretrained(directory)


def build_tiny_encoder(directory: Path, family: str = "wordpiece") -> Path:
    """A randomly initialised 2-layer BERT plus a tiny tokenizer, as a local model directory."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    directory.mkdir(parents=True, exist_ok=True)
    if family == "wordpiece":
        build_wordpiece_tokenizer(directory)
    else:
        build_unigram_tokenizer(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(directory)
    return directory


def data_root(corpora: dict[str, Path]) -> Path:
    """The directory every tiny corpus file lies under: the recipe's data root."""
    return Path(os.path.commonpath([str(path.parent) for path in corpora.values()]))


def shipped_topics() -> TopicConfig:
    """The shipped recipe's topic section: its label set, kinds, section map and split."""
    topics = load_config(RECIPES_DIR / "default.yaml").topics
    assert topics is not None
    return topics


def write_config(root: Path, encoder: Path, corpora: dict[str, Path], **extra: object) -> Path:
    """A recipe over the tiny corpora and encoder, naming the corpora under their data root."""
    import yaml

    data = data_root(corpora)

    def name(key: str) -> str:
        return corpora[key].relative_to(data).as_posix()

    repo = Path(__file__).resolve().parents[1]
    shutil.copy(repo / "configs" / "stories.yaml", root / "stories.yaml")
    topics = shipped_topics()
    config = {
        "name": "khabar-tiny",
        "data_root": str(data),
        "encoder": {"name": str(encoder), "dropout": 0.0},
        "entities": {
            "types": ["PER", "ORG", "LOC", "MISC"],
            "display_names": {"PER": "شخص", "LOC": "مكان"},
            "train": name("ner_train"),
            "test": name("ner_test"),
            "dev_fraction": 0.2,
            "packing": {"copies": 1, "min_tokens": 8},
        },
        "topics": {
            "labels": list(topics.labels),
            "display_names": {"sport": "رياضة"},
            "kinds": {
                "politics": "section",
                "economy": "section",
                "sport": "section",
                "technology": "section",
                "culture": "section",
                "middle_east": "region",
                "middle_east_conflict": "story",
                "russia_ukraine": "story",
            },
            "ant_paths": [name("ant")],
            "section_map": dict(topics.section_map),
            "story_rules": "stories.yaml",
            "fignews": name("fignews"),
            "split": {"train": 0.6, "dev": 0.2, "test": 0.2},
        },
        "windows": {"max_length": 24, "stride": 6, "topic_train_max_length": 24},
        "training": {
            "seed": 1,
            "epochs": 4,
            "learning_rate": 1e-3,
            "ner_batch_size": 8,
            "topic_batch_size": 8,
            "threads": 1,
            "warmup_ratio": 0.0,
        },
        "export": {"per_channel": False, "trim_vocab": True},
    }
    for dotted, value in extra.items():
        section, _, key = dotted.partition("__")
        config.setdefault(section, {})[key] = value
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path
