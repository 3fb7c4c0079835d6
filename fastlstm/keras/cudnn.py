"""Keras 2's CuDNNLSTM weights as Keras LSTM weights (one place for files and set_weights)."""
import numpy as np


def from_cudnn_weights(kernel, recurrent_kernel, bias):
    """[kernel, recurrent_kernel, bias] of a Keras LSTM from a Keras 2 CuDNNLSTM's.

    cuDNN reads each gate's block of the stored kernel as a row-major (H, I) matrix and
    each recurrent block as (H_out, H_in), and keeps two biases (input, then recurrent):
    the same conversion Keras 2 applied when it loaded such weights into an LSTM.

    Parameters
    ----------
    kernel : ndarray, shape (I, 4H)
    recurrent_kernel : ndarray, shape (H, 4H)
    bias : ndarray, shape (8H,)

    Returns
    -------
    list of ndarray
        kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,) in Keras LSTM's layout.
    """
    inputs, gates = kernel.shape
    units = gates // 4
    kernel = np.concatenate([blk.reshape(units, inputs).T
                             for blk in np.split(kernel, 4, axis=1)], axis=1)
    recurrent_kernel = np.concatenate([blk.T for blk in np.split(recurrent_kernel, 4, axis=1)],
                                      axis=1)
    return [kernel, recurrent_kernel, bias[:gates] + bias[gates:]]
