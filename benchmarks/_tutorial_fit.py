"""The tutorial's training code as written, for bench_train.py to time.

Run as a child process (the Keras backend is fixed per process):
``python _tutorial_fit.py DATA.npz EPOCHS`` with ``KERAS_BACKEND`` set.
It imports ``tensorflow.keras`` when the backend is TensorFlow, as the
tutorial does, else plain ``keras``; prints one JSON line of timings.
"""

import json
import os
import sys
import time

import numpy as np

if os.environ.get("KERAS_BACKEND") == "tensorflow":
    from tensorflow import keras  # the tutorial's own stack
else:
    import keras

data = np.load(sys.argv[1])
epochs = int(sys.argv[2])

# The tutorial: flatten, pixels / 255, one-hot labels, a 45,000 / 15,000 split.
X = data["x"].reshape(-1, 784).astype("float32") / 255
y = keras.utils.to_categorical(data["y"], 10)
order = np.random.default_rng(42).permutation(len(X))
X_train, X_val = X[order[:45000]], X[order[45000:]]
y_train, y_val = y[order[:45000]], y[order[45000:]]

model = keras.models.Sequential(
    [
        keras.Input(shape=(784,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ]
)
model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])

epoch_seconds = []


class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        epoch_seconds.append(time.perf_counter() - self.start)


start = time.perf_counter()
model.fit(
    X_train,
    y_train,
    epochs=epochs,
    batch_size=128,
    validation_data=(X_val, y_val),
    verbose=0,
    callbacks=[Timer()],
)
fit_seconds = time.perf_counter() - start
loss, accuracy = model.evaluate(X_val, y_val, verbose=0)
print(
    json.dumps(
        {
            "fit_seconds": fit_seconds,
            "epoch_seconds": epoch_seconds,
            "accuracy": float(accuracy),
            "backend": keras.backend.backend(),
            "keras": keras.__version__,
        }
    )
)
