package org.sparkquant.format.gguf;

import java.io.IOException;

/**
 * Supplies the data of each tensor of a GGUF export, in file order: {@link GgufExporter} calls {@link #produce} once
 * per tensor and the producer writes exactly {@link ExportTensor#bytes()} bytes — the rows in GGUF order, each
 * {@link ExportTensor#rowBytes()} long — in as many {@link Sink#write} calls as it likes. The default is
 * {@link RtnProducer} (round-to-nearest with ggml's reference quantizers); a GPTQ pipeline supplies its calibrated
 * blocks instead, e.g. by delegating to RTN for the tensors it does not quantize.
 */
@FunctionalInterface
public interface TensorProducer {
    void produce(ExportTensor tensor, Sink out) throws IOException;

    /** Where a producer writes a tensor's bytes (the file being written). */
    @FunctionalInterface
    interface Sink {
        void write(byte[] bytes, int offset, int length) throws IOException;

        default void write(byte[] bytes) throws IOException {
            write(bytes, 0, bytes.length);
        }
    }
}
