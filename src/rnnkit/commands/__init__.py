"""The commands of the ``rnnkit`` command line, one module per command.

Each module exposes ``add_parser(subparsers)`` (its flags) and ``run(args) -> int`` (the exit
status), and calls the library for the work; ``rnnkit.cli`` holds ``main()`` and the table of
commands. Shared argument types and the help format are in :mod:`rnnkit.commands.args`.
"""
