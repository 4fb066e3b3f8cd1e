package org.sparkquant.spark;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.List;

import org.apache.spark.Partitioner;
import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.api.java.JavaRDD;
import scala.Tuple2;

/**
 * Sums per-partition partial arrays (Hessian partials) in the order of their partition index, so the result is
 * bit-identical whatever the number of executors, the scheduling or retries. Large arrays travel as tiles: each tile
 * is one Spark record (bounded size), shuffled to the reducer of its tile, sorted by source partition, and summed
 * there in that order, one record at a time.
 */
public final class OrderedSum {
    private OrderedSum() {}

    /** A tile of a partial: {@code tile} index, the {@code source} partition it came from, and its values. */
    public record Piece(int tile, int source, double[] values) implements Serializable {}

    /**
     * Sums the pieces per tile in source order and hands each summed tile to {@code sink} on the executor that
     * reduced it; returns what the sinks return, ordered by tile.
     */
    public static <R extends Serializable> List<R> sum(JavaRDD<Piece> pieces, int tiles, TileSink<R> sink) {
        JavaPairRDD<Tuple2<Integer, Integer>, double[]> keyed = pieces.mapToPair(
                p -> new Tuple2<>(new Tuple2<>(p.tile(), p.source()), p.values()));
        JavaPairRDD<Tuple2<Integer, Integer>, double[]> sorted = keyed.repartitionAndSortWithinPartitions(
                new TilePartitioner(tiles), new KeyOrder());
        List<Tuple2<Integer, R>> results = sorted.mapPartitions(it -> reduce(it, sink)).collect();
        List<Tuple2<Integer, R>> ordered = new ArrayList<>(results);
        ordered.sort(Comparator.comparingInt(Tuple2::_1));
        List<R> out = new ArrayList<>();
        for (Tuple2<Integer, R> t : ordered) {
            out.add(t._2());
        }
        return out;
    }

    private static <R extends Serializable> Iterator<Tuple2<Integer, R>> reduce(
            Iterator<Tuple2<Tuple2<Integer, Integer>, double[]>> it, TileSink<R> sink) throws Exception {
        List<Tuple2<Integer, R>> out = new ArrayList<>();
        int tile = -1;
        int lastSource = -1;
        double[] acc = null;
        while (it.hasNext()) {
            Tuple2<Tuple2<Integer, Integer>, double[]> record = it.next();
            int t = record._1()._1();
            if (t != tile) {
                if (acc != null) {
                    out.add(new Tuple2<>(tile, sink.accept(tile, acc)));
                }
                tile = t;
                lastSource = -1;
                acc = record._2().clone();
            } else {
                double[] v = record._2();
                if (v.length != acc.length) {
                    throw new IllegalStateException("tile " + t + ": pieces of different sizes");
                }
                for (int i = 0; i < v.length; i++) {
                    acc[i] += v[i];
                }
            }
            int source = record._1()._2();
            if (source == lastSource) {
                throw new IllegalStateException("tile " + t + ": two pieces from partition " + source);
            }
            lastSource = source;
        }
        if (acc != null) {
            out.add(new Tuple2<>(tile, sink.accept(tile, acc)));
        }
        return out.iterator();
    }

    /** Receives a summed tile on an executor (e.g. writes it to the work directory) and returns a small result. */
    @FunctionalInterface
    public interface TileSink<R extends Serializable> extends Serializable {
        R accept(int tile, double[] sum) throws Exception;
    }

    private static final class TilePartitioner extends Partitioner {
        private static final long serialVersionUID = 1L;
        private final int tiles;

        TilePartitioner(int tiles) {
            this.tiles = tiles;
        }

        @Override
        public int numPartitions() {
            return tiles;
        }

        @Override
        @SuppressWarnings("unchecked")
        public int getPartition(Object key) {
            return ((Tuple2<Integer, Integer>) key)._1();
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof TilePartitioner p && p.tiles == tiles;
        }

        @Override
        public int hashCode() {
            return tiles;
        }
    }

    private static final class KeyOrder implements Comparator<Tuple2<Integer, Integer>>, Serializable {
        private static final long serialVersionUID = 1L;

        @Override
        public int compare(Tuple2<Integer, Integer> a, Tuple2<Integer, Integer> b) {
            int c = Integer.compare(a._1(), b._1());
            return c != 0 ? c : Integer.compare(a._2(), b._2());
        }
    }
}
