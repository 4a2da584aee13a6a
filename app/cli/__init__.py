"""The `tiergate` command. Each area registers its subcommands from its own module."""
