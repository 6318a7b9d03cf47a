"""The student alone, optionally as ONNX too: python tools/export.py CONFIG CKPT --out student.pth [--onnx s.onnx]"""

from xmodal.apis.export import main

if __name__ == "__main__":
    main()
