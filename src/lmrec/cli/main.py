"""The `lmrec` command line: data, eval, models, demo."""

from __future__ import annotations

import typer

from lmrec.cli import data_cmd, eval_cmd, serve_cmd

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="lmrec: search and recommendation with language models.")
app.add_typer(data_cmd.app, name="data", help="Inspect, validate, clean and download data sets.")
app.command("eval")(eval_cmd.eval_command)
app.command("models")(eval_cmd.models_command)
app.command("demo")(eval_cmd.demo_command)
app.command("search")(serve_cmd.search_command)
app.command("recommend")(serve_cmd.recommend_command)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
