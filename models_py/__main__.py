from models_py.cli import app

app()
