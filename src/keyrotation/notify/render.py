"""Render email templates with Jinja2, autoescaped, from a folder of `.html` files."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from keyrotation.errors import TemplateError
from keyrotation.settings import TEMPLATE_NAME

PACKAGE_TEMPLATES = Path(__file__).parent / "templates"


class ActionLines(list):
    """The `actions` list: iterable in a template, and printed as one line each by {{actions}}."""

    def __html__(self) -> Markup:
        return Markup("<br>\n").join(escape(line) for line in self)

    def __str__(self) -> str:
        return "\n".join(str(line) for line in self)


def render(source: str, values: dict[str, Any]) -> str:
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.Undefined)
    try:
        template = environment.from_string(source)
        return template.render({**values, "actions": ActionLines(values.get("actions", []))})
    except jinja2.TemplateError as exc:
        raise TemplateError(f"The email template does not render: {exc}") from exc


def check_syntax(source: str, name: str) -> str:
    """Parse a template without rendering it, so a broken one stops a run before any change."""
    try:
        jinja2.Environment(autoescape=True).parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"Email template {name!r} does not parse: line {exc.lineno}: {exc.message}"
        ) from exc
    return source


def check_name(name: str) -> str:
    if not TEMPLATE_NAME.fullmatch(name) or ".." in name:
        raise TemplateError(f"Template name {name!r} must be a plain file name, without folders")
    return name


def load_local(name: str, folders: Iterable[Path] = (PACKAGE_TEMPLATES,)) -> str:
    """Read template `name` from the first folder that has it."""
    check_name(name)
    for folder in folders:
        path = folder / name
        if path.is_file():
            try:
                return path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise TemplateError(f"Cannot read email template {path}: {exc}") from exc
    searched = ", ".join(str(f) for f in folders)
    raise TemplateError(f"Email template {name!r} not found in {searched}")


def text_version(values: dict[str, Any]) -> str:
    """A plain-text body beside the HTML one, for mail readers that want it."""
    lines = [
        f"Account {values.get('account_name')} ({values.get('account_id')}), "
        f"{values.get('timestamp')}",
        "",
        *[str(line) for line in values.get("actions", [])],
    ]
    if values.get("report_link"):
        lines += ["", f"The account's compliance report (for an hour): {values['report_link']}"]
    return "\n".join(lines) + "\n"


def template_s3_key(prefix: str, name: str) -> str:
    """Where a template lives in the bucket; the package command writes the same key."""
    return f"{prefix.strip('/')}/Template/{check_name(name)}"
