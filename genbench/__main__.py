from genbench.cli import app

app(prog_name="genbench")
