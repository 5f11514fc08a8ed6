from genbench.interfaces.cli import app

app(prog_name="genbench")
