"""``khabar stories check FILE``: validate a story definition and show what it catches.

The file is validated first (one line naming the file and the field on error). Then,
when the ANT and FIGNEWS data are present, candidates that name one of the story's
anchors are scored and the top texts of each corpus are printed with their evidence,
so an author sees what the definition catches before shipping it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from serving.data_root import resolve_data_root
from serving.errors import ConfigError

CHECK_HELP = (
    "Validate a story definition file and show its top-scoring ANT and FIGNEWS texts "
    "(when the data root exists)."
)
DATA_HELP = "Data root holding topics/ant-v2.1 and topics/fignews-2024."
TOP_HELP = "Texts shown per corpus."
CANDIDATES_HELP = "Texts per corpus embedded and scored (those naming the most anchors)."

stories_app = typer.Typer(
    help="Story definitions: check what a file catches.", no_args_is_help=True
)


@stories_app.command("check", help=CHECK_HELP)
def check_cli(
    file: Annotated[Path, typer.Argument(help="A story definition (.yaml).", metavar="FILE")],
    data: Annotated[
        Path | None, typer.Option("--data", help=DATA_HELP, metavar="DIR", show_default=False)
    ] = None,
    top: Annotated[int, typer.Option("--top", help=TOP_HELP, min=1)] = 10,
    candidates: Annotated[int, typer.Option("--candidates", help=CANDIDATES_HELP, min=1)] = 150,
) -> None:
    """Validate, then rank corpus texts by the definition's score."""
    from serving.stories.schema import load_definition
    from serving.stories.scorer import load_story_scorer
    from serving.stories.terms import fold

    if file.is_dir():
        raise ConfigError(f"{file}: give one definition file, not a directory")
    story = load_definition(file)
    typer.echo(
        f"{file}: valid story {story.name!r} "
        f"({story.display_names.ar} / {story.display_names.en}), "
        f"{len(story.terms.anchors)} anchors, {len(story.terms.context)} context terms, "
        f"{len(story.examples.positive)} positive and {len(story.examples.near_miss)} near-miss "
        f"examples, combiner: {story.combiner.calibrated_on if story.combiner else 'default'}"
    )
    from training.story_set import corpus_texts, data_available

    data = resolve_data_root(data)
    if not data_available(data):
        typer.echo(f"no ANT/FIGNEWS data under {data}: nothing to rank")
        return
    scorer = load_story_scorer([file], shipped=None)
    assert scorer is not None
    compiled = scorer.stories[0]
    by_corpus: dict[str, list[tuple[str, str]]] = {"ant": [], "fignews": []}
    for (corpus, doc_id), versions in corpus_texts(data).items():
        for text, _ in versions:
            by_corpus[corpus].append((doc_id, text))
    for corpus, items in by_corpus.items():
        ranked = sorted(
            ((compiled.anchors.count(fold(t)), i, t) for i, t in items), key=lambda x: -x[0]
        )
        pool = [(i, t) for n, i, t in ranked[:candidates] if n > 0]
        if not pool:
            typer.echo(f"\n{corpus}: no text names an anchor")
            continue
        probabilities = scorer.score([t for _, t in pool])[:, 0]
        order = probabilities.argsort()[::-1][:top]
        above = int((probabilities >= compiled.combiner.threshold).sum())
        typer.echo(
            f"\n{corpus}: {above} of {len(pool)} candidates over the threshold "
            f"{compiled.combiner.threshold} (scored without the model's entities and heads, "
            "so they differ a little from khabar predict)"
        )
        for index in order:
            doc_id, text = pool[index]
            head = " ".join(text.split())[:110]
            typer.echo(f"  {probabilities[index]:.3f}  {corpus}:{doc_id}  {head}")
