"""`python -m web [--server ws://127.0.0.1:8080/ws] [--host 127.0.0.1] [--port 7860] [--share] [--token TOKEN]`"""

import sys

from web.cli import main

if __name__ == "__main__":
    sys.exit(main())
