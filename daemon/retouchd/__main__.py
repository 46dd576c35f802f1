from retouchd.cli import main

main()
