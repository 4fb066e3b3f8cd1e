package org.sparkquant.format.gguf;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.sparkquant.SparkQuantException;

/**
 * The pieces of a SentencePiece {@code tokenizer.model} (a protobuf {@code ModelProto}): text, score and type of each
 * piece, which is all convert_hf_to_gguf takes from it. Only field 1 (repeated {@code SentencePiece}: piece = 1,
 * score = 2, type = 3) is decoded; every other field is skipped by its wire type.
 */
record SentencePieceModel(List<Piece> pieces) {
    /** SentencePiece's piece types (sentencepiece_model.proto). */
    static final int NORMAL = 1;
    static final int UNKNOWN = 2;
    static final int CONTROL = 3;
    static final int USER_DEFINED = 4;
    static final int UNUSED = 5;
    static final int BYTE = 6;

    record Piece(String text, float score, int type) {}

    static SentencePieceModel parse(byte[] bytes, String source) {
        try {
            Cursor c = new Cursor(bytes, 0, bytes.length);
            List<Piece> pieces = new ArrayList<>();
            while (c.hasMore()) {
                long key = c.varint();
                int field = (int) (key >>> 3);
                int wire = (int) (key & 7);
                if (field == 1 && wire == 2) {
                    int len = c.length();
                    pieces.add(piece(new Cursor(bytes, c.pos, c.pos + len)));
                    c.pos += len;
                } else {
                    c.skip(wire);
                }
            }
            if (pieces.isEmpty()) {
                throw SparkQuantException.badInput(source + ": no pieces (not a SentencePiece model?)");
            }
            return new SentencePieceModel(List.copyOf(pieces));
        } catch (IndexOutOfBoundsException | IllegalStateException e) {
            throw SparkQuantException.badInput(source + ": not a valid SentencePiece model (" + e.getMessage() + ")");
        }
    }

    private static Piece piece(Cursor c) {
        String text = "";
        float score = 0;
        int type = NORMAL;
        while (c.hasMore()) {
            long key = c.varint();
            int field = (int) (key >>> 3);
            int wire = (int) (key & 7);
            if (field == 1 && wire == 2) {
                int len = c.length();
                text = new String(c.bytes, c.pos, len, StandardCharsets.UTF_8);
                c.pos += len;
            } else if (field == 2 && wire == 5) {
                score = ByteBuffer.wrap(c.bytes, c.pos, 4).order(ByteOrder.LITTLE_ENDIAN).getFloat();
                c.pos += 4;
            } else if (field == 3 && wire == 0) {
                type = (int) c.varint();
            } else {
                c.skip(wire);
            }
        }
        return new Piece(text, score, type);
    }

    /** Protobuf wire-format reads within [pos, end). */
    private static final class Cursor {
        final byte[] bytes;
        int pos;
        final int end;

        Cursor(byte[] bytes, int pos, int end) {
            if (end > bytes.length || pos > end) {
                throw new IndexOutOfBoundsException("field past the end of the file");
            }
            this.bytes = bytes;
            this.pos = pos;
            this.end = end;
        }

        boolean hasMore() {
            return pos < end;
        }

        long varint() {
            long v = 0;
            for (int shift = 0; shift < 64; shift += 7) {
                if (pos >= end) {
                    throw new IndexOutOfBoundsException("truncated varint");
                }
                byte b = bytes[pos++];
                v |= (long) (b & 0x7f) << shift;
                if ((b & 0x80) == 0) {
                    return v;
                }
            }
            throw new IllegalStateException("varint too long");
        }

        int length() {
            long len = varint();
            if (len < 0 || len > end - pos) {
                throw new IndexOutOfBoundsException("length " + len + " past the end");
            }
            return (int) len;
        }

        void skip(int wire) {
            switch (wire) {
                case 0 -> varint();
                case 1 -> advance(8);
                case 2 -> advance(length());
                case 5 -> advance(4);
                default -> throw new IllegalStateException("unsupported wire type " + wire);
            }
        }

        private void advance(int n) {
            if (n > end - pos) {
                throw new IndexOutOfBoundsException("field past the end");
            }
            pos += n;
        }
    }
}
