from mmer.cli import main

raise SystemExit(main())
