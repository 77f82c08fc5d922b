"""Regenerate the example models in this folder from byoc_sdk.model_zoo.

    python examples/make_examples.py

The models are committed so the README's first command works without this step.
"""

from pathlib import Path

import onnx

from byoc_sdk import model_zoo

HERE = Path(__file__).parent

EXAMPLES = {
    "small_cnn.onnx": model_zoo.small_cnn,
    "mobilenet_like.onnx": model_zoo.depthwise_cnn,
    "transformer_block.onnx": model_zoo.transformer_block,
}


def main() -> None:
    for name, build in EXAMPLES.items():
        onnx.save_model(build(), HERE / name)
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
