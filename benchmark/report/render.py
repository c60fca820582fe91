"""A ``Table`` as text: a GitHub Markdown pipe table, a LaTeX booktabs float, or a rich table
for the terminal; the same cells in each."""

from __future__ import annotations

import re

from kdbench.report.tables import Table

LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
LATEX_SYMBOLS = {
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "—": "--",
    "<": "$<$",
    ">": "$>$",
    "←": r"$\leftarrow$",
    "†": r"\dag{}",
}
SIGNIFICANCE = re.compile(r"^(?P<number>[+-]?\d+(?:\.\d+)?)(?P<stars>\*+)(?P<rest>.*)$")


def to_markdown(table: Table) -> str:
    """A GitHub pipe table (bold as ``**x**``), the caption as a paragraph below it."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    rule = ["---:" if a == "r" else ":---" for a in table.align]
    body = [
        line([markdown_cell(table, i, j) for j in range(len(table.columns))])
        for i in range(len(table.rows))
    ]
    text = "\n".join([line([markdown_text(c) for c in table.columns]), line(rule), *body])
    return text + (f"\n\n{table.caption}" if table.caption else "")


def markdown_cell(table: Table, i: int, j: int) -> str:
    text = markdown_text(table.rows[i][j])
    return f"**{text}**" if (i, j) in table.bold and text else text


def markdown_text(text: str) -> str:
    """Escaped for a pipe table: ``|`` and ``*`` (significance marks) are literal."""
    return text.replace("|", r"\|").replace("*", r"\*")


def to_latex(table: Table, label: str = "") -> str:
    """A ``table`` float with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``)."""

    def line(cells: list[str]) -> str:
        return " & ".join(cells) + r" \\"

    body = [
        line([latex_cell(table, i, j) for j in range(len(table.columns))])
        for i in range(len(table.rows))
    ]
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{latex_text(table.caption)}}}" if table.caption else "",
        rf"\label{{{label}}}" if label else "",
        rf"\begin{{tabular}}{{{table.align}}}",
        r"\toprule",
        line([latex_text(c) for c in table.columns]),
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    return "\n".join(x for x in lines if x) + "\n"


def latex_cell(table: Table, i: int, j: int) -> str:
    """One cell: escaped, symbols as math, a trailing significance mark as a superscript."""
    text = table.rows[i][j]
    found = SIGNIFICANCE.match(text)
    if found:
        cell = f"{found['number']}$^{{{found['stars']}}}${latex_text(found['rest'])}"
    else:
        cell = latex_text(text)
    cell = re.sub(r"^-(?=\d)", "$-$", cell)  # a minus sign, not a hyphen
    return rf"\textbf{{{cell}}}" if (i, j) in table.bold and text else cell


def latex_text(text: str) -> str:
    escaped = "".join(LATEX_SPECIALS.get(ch, ch) for ch in text)
    return "".join(LATEX_SYMBOLS.get(ch, ch) for ch in escaped)


def to_rich(table: Table, title: str = ""):
    """A rich table for the terminal (bold as bold, the caption below it)."""
    from rich.markup import escape
    from rich.table import Table as RichTable

    shown = RichTable(title=title or None, caption=table.caption or None, caption_justify="left")
    for name, align in zip(table.columns, table.align, strict=True):
        shown.add_column(escape(name), justify="right" if align == "r" else "left")
    for i, row in enumerate(table.rows):
        cells = [escape(text) for text in row]
        shown.add_row(
            *(f"[bold]{c}[/bold]" if (i, j) in table.bold else c for j, c in enumerate(cells))
        )
    return shown
