"""What the CLI's commands do besides parsing: run one library function with progress, then report.

`cli.py` declares the commands and their options (`args.py` holds the options several commands
share); the modules here turn a library result into the lines a user reads.
"""
