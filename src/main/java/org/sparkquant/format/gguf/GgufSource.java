package org.sparkquant.format.gguf;

import java.io.Closeable;
import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * Positional read access to a GGUF file, so the reader works on local files and (through an adapter) on any
 * Hadoop file system stream that supports positioned reads.
 */
public interface GgufSource extends Closeable {
    long size() throws IOException;

    /** Fills {@code dst} from the given absolute position; EOFException if the source ends first. */
    void readFully(long position, ByteBuffer dst) throws IOException;

    static GgufSource of(Path path) throws IOException {
        FileChannel ch = FileChannel.open(path, StandardOpenOption.READ);
        return new GgufSource() {
            @Override
            public long size() throws IOException {
                return ch.size();
            }

            @Override
            public void readFully(long position, ByteBuffer dst) throws IOException {
                long p = position;
                while (dst.hasRemaining()) {
                    int n = ch.read(dst, p);
                    if (n < 0) {
                        throw new EOFException("end of file at " + p);
                    }
                    p += n;
                }
            }

            @Override
            public void close() throws IOException {
                ch.close();
            }
        };
    }

    /** An in-memory source (tests, small files). */
    static GgufSource of(byte[] bytes) {
        return new GgufSource() {
            @Override
            public long size() {
                return bytes.length;
            }

            @Override
            public void readFully(long position, ByteBuffer dst) throws IOException {
                if (position < 0 || position + dst.remaining() > bytes.length) {
                    throw new EOFException("read past end at " + position);
                }
                dst.put(bytes, (int) position, dst.remaining());
            }

            @Override
            public void close() {}
        };
    }
}
