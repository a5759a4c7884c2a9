from softmix.cli import main

raise SystemExit(main())
