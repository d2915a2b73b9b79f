"""GPU recipe: full fine-tune (BatchNormalization frozen), mixed precision, one or more input sizes.

Runs under any Keras backend; on a GPU machine without TensorFlow use KERAS_BACKEND=jax (or torch).
For each size: 2 epochs on the heads, then the whole network with a cosine learning rate,
early stopping on validation loss, checkpoints, a CSV log, and validation accuracy per head.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from fashion import HEADS


def run_gpu_recipe(data_dir: str, split_file: str, labels_file: str, weights: str, sizes: list[tuple[int, int]],
                   out_dir: str, epochs: int = 12, batch_size: int = 128, learning_rate: float = 3e-4,
                   label_smoothing: float = 0.1, seconds_per_size: list[float] | None = None,
                   mixed_precision: bool = True, workers: int | None = None, backbone: str = "efficientnetb0") -> dict:
    """Fine-tune the whole network at each size.

    With ``seconds_per_size`` the learning rate follows a cosine over that wall-clock window
    (TimeCosine) instead of a fixed number of epochs: the schedule completes on any machine.
    """
    import keras

    from fashion.data.dataset import load_dataset
    from fashion.data.labels import encode
    from fashion.data.split import attach_split, read_split

    from .arrays import decode_images, split_frame
    from .finetune import (
        ArrayBatches,
        TimeCosine,
        accuracy_per_head,
        cosine_schedule,
        predict_arrays,
        standard_callbacks,
    )
    from .model import build_model, compile_model, set_trainable_from

    start = time.time()
    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    vocab = json.loads(Path(labels_file).read_text())
    frame, report = load_dataset(data_dir)
    print(report.summary(), flush=True)
    frame = attach_split(frame, read_split(split_file))
    train, val = split_frame(frame, "train"), split_frame(frame, "val")
    y_train, y_val = encode(train, vocab), encode(val, vocab)
    num_classes = {h: len(vocab[h]) for h in HEADS}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {"backend": keras.backend.backend(), "train_images": len(train), "val_images": len(val), "sizes": {}}

    for position, (height, width) in enumerate(sizes):
        tag = f"{height}x{width}"
        run_dir = out / tag
        t0 = time.time()
        x_train = decode_images(list(train["path"]), height, width, workers, desc=f"train {tag}")
        x_val = decode_images(list(val["path"]), height, width, workers, desc=f"val {tag}")
        model = build_model(num_classes, height, width, weights=weights, backbone=backbone)
        batches = ArrayBatches(x_train, y_train, batch_size, augment=True, shuffle=True, workers=8,
                               use_multiprocessing=False)
        val_batches = ArrayBatches(x_val, y_val, 512)
        set_trainable_from(model, "stem_conv")  # everything but BatchNormalization
        if seconds_per_size:
            compile_model(model, learning_rate, label_smoothing)
            callbacks = standard_callbacks(run_dir, patience=100) + [TimeCosine(learning_rate, seconds_per_size[position])]
            max_epochs = 1000
        else:
            steps = epochs * len(batches)
            compile_model(model, cosine_schedule(learning_rate, steps, warmup_steps=len(batches) // 2), label_smoothing)
            callbacks, max_epochs = standard_callbacks(run_dir), epochs
        history = model.fit(batches, validation_data=val_batches, epochs=max_epochs, verbose=2, callbacks=callbacks)
        model.save_weights(str(run_dir / "final.weights.h5"))
        accuracy = accuracy_per_head(predict_arrays(model, x_val), y_val)
        results["sizes"][tag] = {"val_accuracy": accuracy, "epochs_run": len(history.history["loss"]),
                                 "seconds": round(time.time() - t0, 1)}
        print(tag, json.dumps(results["sizes"][tag]), flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    results["seconds"] = round(time.time() - start, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results
