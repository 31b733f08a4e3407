"""The `lmrec` command line: data, eval, models, search, recommend, serve, train, keys, demo."""

from __future__ import annotations

import typer

from lmrec.cli import (cross_encoder_cmd, data_cmd, eval_cmd, events_cmd, finetune_cmd, fit_cmd, kg_cmd,
                       pipeline_cmd, ray_cmd, serve_cmd, service_cmd, users_cmd)

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="lmrec: search and recommendation with language models.")
app.add_typer(data_cmd.app, name="data", help="Inspect, validate, clean and download data sets.")
app.add_typer(kg_cmd.app, name="kg", help="The knowledge graph: summarise it, import triple files.")
app.command("eval")(eval_cmd.eval_command)
app.command("fit")(fit_cmd.fit_command)
app.command("models")(eval_cmd.models_command)
app.add_typer(service_cmd.keys_app, name="keys", help="Create, list and revoke the service's API keys.")
app.add_typer(users_cmd.app, name="users", help="Erase users from the service's store (right to erasure).")
app.command("serve")(service_cmd.serve_command)
app.add_typer(events_cmd.app, name="events", help="Publish events to a stream the service consumes.")
app.command("train")(service_cmd.train_command)
app.command("demo")(service_cmd.demo_command)
app.command("bench-demo")(eval_cmd.demo_command)
app.command("search")(serve_cmd.search_command)
app.command("recommend")(serve_cmd.recommend_command)
app.command("pipeline")(pipeline_cmd.pipeline_command)
app.command("finetune-encoder")(finetune_cmd.finetune_encoder_command)
app.command("finetune-cross-encoder")(cross_encoder_cmd.finetune_cross_encoder_command)
app.add_typer(ray_cmd.app, name="ray", help="Distributed jobs on Ray: embed, eval, train, serve (autoscaled replicas).")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
