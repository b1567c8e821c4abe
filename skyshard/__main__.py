from skyshard.cli import main

raise SystemExit(main())
