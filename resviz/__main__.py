from resviz.cli import main

raise SystemExit(main())
