"""The README documents every pipeline key exactly as the models define it."""

from __future__ import annotations

from pathlib import Path

from lens.config.models import PipelineConfig
from lens.config.reference import SECTIONS, reference_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_holds_the_generated_key_reference() -> None:
    assert reference_markdown() in README.read_text(), (
        "README's key reference is out of date: paste `python -m lens.config.reference` into it"
    )


def test_reference_covers_every_section_model() -> None:
    documented = {model for _, model in SECTIONS}

    def walk(model: type) -> set[type]:
        found = {model}
        for info in model.model_fields.values():  # type: ignore[attr-defined]
            for sub in _models_in(info.annotation):
                if sub not in found:
                    found |= walk(sub)
        return found

    missing = {m.__name__ for m in walk(PipelineConfig) - documented} - {"PipelineConfig", "OutputsConfig"}
    assert not missing, f"models with no section in the reference: {sorted(missing)}"


def _models_in(tp: object) -> list[type]:
    import typing

    from pydantic import BaseModel

    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for arg in typing.get_args(tp) for m in _models_in(arg)]


def test_readme_gives_the_two_commands() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text
