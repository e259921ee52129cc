from mlflow_exim.cli import main

main()
