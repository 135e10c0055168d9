from filodb.cli import main

main()
