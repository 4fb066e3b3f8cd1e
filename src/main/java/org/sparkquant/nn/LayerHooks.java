package org.sparkquant.nn;

import org.nd4j.linalg.api.ndarray.INDArray;
import org.sparkquant.model.LinearModule;

/**
 * Receives the input of every linear module of a decoder layer as the layer runs: {@link LinearModule.Input#ATTN_IN}
 * (post-norm, read by q/k/v), {@link LinearModule.Input#ATTN_OUT_IN} (attention output, read by o_proj),
 * {@link LinearModule.Input#MLP_IN} (post-norm, read by gate/up) and {@link LinearModule.Input#DOWN_IN}
 * ({@code silu(gate)·up}, read by down_proj), in that order. {@code x} is {@code [batch.tokens(), width]}, row-major;
 * it is scratch memory that is overwritten after the call returns, so copy or reduce it (e.g. into a Hessian) inside.
 * <p>
 * In a mixture-of-experts layer {@link #onInput} delivers {@code MLP_IN} over all tokens (what the router and a shared
 * expert read) and {@code SHARED_DOWN_IN}; {@link #onExpertInput} delivers each routed expert's inputs, experts in
 * ascending order, only for experts that received tokens.
 */
@FunctionalInterface
public interface LayerHooks {
    LayerHooks NONE = (input, x, batch) -> { };

    void onInput(LinearModule.Input input, INDArray x, SequenceBatch batch);

    /**
     * Expert {@code expert}'s input {@code MLP_IN} (the routed tokens' post-norm rows) or {@code DOWN_IN}: {@code x} is
     * {@code [rows.length, width]}, row {@code i} belongs to token row {@code rows[i]} of the batch (ascending).
     */
    default void onExpertInput(LinearModule.Input input, int expert, INDArray x, int[] rows, SequenceBatch batch) {
    }
}
