from syncctl.cli import main

main()
