from prana.cli.main import main

main()
