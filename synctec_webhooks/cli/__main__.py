"""`python -m synctec_webhooks.cli`, the same as the `synctec-webhooks` script."""

import sys

from synctec_webhooks.cli.main import main

sys.exit(main())
