"""Ship the top-level notebooks/ and runbooks/ inside the package, so `pip install` of this
repository (or a wheel built from it) brings everything a team needs; the top-level folders stay
the one source of what ships (lib/fkrunbook/resources.py finds either)."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = {"notebooks": "*.ipynb", "runbooks": "*.yaml"}


class BuildWithNotebooks(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the top-level folders in place
            return
        for folder, pattern in SHIPPED.items():
            target = Path(self.build_lib) / "fkrunbook" / folder
            target.mkdir(parents=True, exist_ok=True)
            for source in sorted((HERE / folder).glob(pattern)):
                shutil.copy2(source, target / source.name)


setup(cmdclass={"build_py": BuildWithNotebooks})
