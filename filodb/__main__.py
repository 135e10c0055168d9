import os

if os.environ.get("_FILODB_UP_CONFIG") is not None:  # filodb.supervisor.CONFIG_ENV
    from filodb.supervisor import main  # `filodb up` after the CLI's checks: no CLI imports
else:
    from filodb.cli import main

main()
