from czar.main import main

main()
