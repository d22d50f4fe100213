from featurestack.cli import main

main()
