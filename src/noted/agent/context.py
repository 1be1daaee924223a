"""The system prompt, assembled in one place from named sections.

Each section is a name and a body; the prompt is the description followed by the sections
in a fixed order, each inside ``<name>`` tags so the model can tell them apart and so text
inside one section (a stored memory, a summary) cannot pose as another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

__all__ = ["PromptSection", "render_system_prompt", "standard_sections"]


@dataclass(frozen=True, slots=True)
class PromptSection:
    name: str
    body: str


def _bullets(lines: Sequence[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def _escape(text: str, name: str) -> str:
    """Keep a section's text from closing its own tag."""
    return text.replace(f"</{name}>", f"<\\/{name}>")


def standard_sections(
    *,
    instructions: Sequence[str],
    markdown: bool,
    now: datetime | None,
) -> list[PromptSection]:
    """The sections every agent may have: its instructions and additional information."""
    sections: list[PromptSection] = []
    if instructions:
        sections.append(PromptSection("instructions", _bullets(instructions)))
    extra: list[str] = []
    if markdown:
        extra.append("Use markdown to format your answers.")
    if now is not None:
        extra.append(f"The current date and time is {now.strftime('%Y-%m-%d %H:%M %Z').strip()}.")
    if extra:
        sections.append(PromptSection("additional_information", _bullets(extra)))
    return sections


def render_system_prompt(description: str | None, sections: Sequence[PromptSection]) -> str | None:
    """The system prompt text, or None when there is nothing to say."""
    parts: list[str] = []
    if description:
        parts.append(description.strip())
    for section in sections:
        body = _escape(section.body.strip(), section.name)
        if body:
            parts.append(f"<{section.name}>\n{body}\n</{section.name}>")
    return "\n\n".join(parts) if parts else None
