"""Write docs/catalogue.md (encoders, fusions, heads, task models and their inputs) from the registry."""

from xmodal.apis.catalogue import main

if __name__ == "__main__":
    raise SystemExit(main())
