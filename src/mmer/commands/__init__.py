"""CLI subcommands. Each module defines `add_parser(subparsers)`; `mmer.cli` discovers them."""
