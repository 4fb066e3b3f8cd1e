package org.sparkquant.format.gguf;

import java.io.Closeable;
import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import org.sparkquant.io.RandomAccessInput;

/**
 * Positional read access to a GGUF file, so the reader works on local files and on any Hadoop file system
 * ({@link #of(RandomAccessInput)} over {@link org.sparkquant.io.Storage#open}).
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

    /**
     * Positional reads through {@link org.sparkquant.io.Storage} (file://, s3a://, hdfs://, ...); closing the source
     * closes the input. Reads past the end fail with an EOFException naming the file.
     */
    static GgufSource of(RandomAccessInput in) {
        return new GgufSource() {
            @Override
            public long size() {
                return in.length();
            }

            @Override
            public void readFully(long position, ByteBuffer dst) throws IOException {
                int n = dst.remaining();
                if (position < 0 || position > in.length() - n) {
                    throw new EOFException(in.name() + ": read of " + n + " bytes at " + position
                            + " is past the end (" + in.length() + " bytes)");
                }
                if (dst.hasArray()) {
                    in.readFully(position, dst.array(), dst.arrayOffset() + dst.position(), n);
                    dst.position(dst.position() + n);
                } else {
                    byte[] tmp = new byte[n];
                    in.readFully(position, tmp, 0, n);
                    dst.put(tmp);
                }
            }

            @Override
            public void close() {
                in.close();
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
