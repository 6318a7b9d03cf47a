"""The xmodal demo on the embedded digits-av data: python tools/demo.py [--quick] [--out DIR]"""

from xmodal.apis.demo import main

if __name__ == "__main__":
    main()
