from theris_cli.cli import main

main()
