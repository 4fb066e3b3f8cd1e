package org.sparkquant.io;

import java.io.Closeable;

/** A file opened for positional reads; reads past the end are the caller's bad input, reported with the name. */
public interface RandomAccessInput extends Closeable {
    String name();

    long length();

    void readFully(long position, byte[] buffer, int offset, int count);

    @Override
    void close();
}
