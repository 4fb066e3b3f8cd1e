package org.sparkquant.bench;

import java.util.SplittableRandom;

import org.sparkquant.format.gptq.GptqConfig;
import org.sparkquant.format.gptq.GptqPacking;
import org.sparkquant.format.gptq.QuantizedLinear;

/**
 * Packing, unpacking and dequantizing one Llama-3-8B {@code down_proj} ([4096, 14336], group 128) at 3 and 4 bits:
 * what the GPTQ writer and reader spend per module. Baseline: widening the same codes from bytes to ints once, the
 * least any pass over them costs.
 *
 * <pre>java -cp target/classes:target/test-classes:$(cat target/classpath.txt) org.sparkquant.bench.GptqPackBench</pre>
 */
public final class GptqPackBench {
    private static final int OUT = 4096;
    private static final int IN = 14336;
    private static final int GROUP = 128;

    public static void main(String[] args) {
        int rounds = args.length > 0 ? Integer.parseInt(args[0]) : 3;
        for (int bits : new int[] {4, 3}) {
            SplittableRandom r = new SplittableRandom(bits);
            int groups = IN / GROUP;
            int[] codes = new int[IN * OUT];
            for (int i = 0; i < codes.length; i++) {
                codes[i] = r.nextInt(1 << bits);
            }
            float[] scales = new float[groups * OUT];
            int[] zeros = new int[groups * OUT];
            for (int i = 0; i < scales.length; i++) {
                scales[i] = 0.01f + r.nextFloat() * 0.01f;
                zeros[i] = r.nextInt(1 << bits);
            }
            QuantizedLinear q = QuantizedLinear.builder("down_proj", bits, GROUP, false, IN, OUT)
                    .all(codes, scales, zeros).build();
            byte[] raw = q.codes();
            double baseline = Double.MAX_VALUE;
            double pack = Double.MAX_VALUE;
            double unpack = Double.MAX_VALUE;
            double zerosMs = Double.MAX_VALUE;
            double dequant = Double.MAX_VALUE;
            long sink = 0;
            for (int round = 0; round < rounds; round++) {
                long t0 = System.nanoTime();
                int[] widened = new int[raw.length];
                for (int i = 0; i < raw.length; i++) {
                    widened[i] = raw[i] & 0xff;
                }
                long t1 = System.nanoTime();
                int[] qweight = GptqPacking.packQweight(raw, IN, OUT, bits);
                long t2 = System.nanoTime();
                byte[] back = GptqPacking.unpackQweight(qweight, IN, OUT, bits);
                long t3 = System.nanoTime();
                int[] qzeros = GptqPacking.packQzeros(zeros, groups, OUT, bits, GptqConfig.Format.GPTQ_V2);
                int[] z = GptqPacking.unpackQzeros(qzeros, groups, OUT, bits, GptqConfig.Format.GPTQ_V2);
                long t4 = System.nanoTime();
                float[] w = q.dequantize();
                long t5 = System.nanoTime();
                sink += widened[7] + qweight[3] + back[5] + z[1] + (long) w[9];
                baseline = Math.min(baseline, (t1 - t0) / 1e6);
                pack = Math.min(pack, (t2 - t1) / 1e6);
                unpack = Math.min(unpack, (t3 - t2) / 1e6);
                zerosMs = Math.min(zerosMs, (t4 - t3) / 1e6);
                dequant = Math.min(dequant, (t5 - t4) / 1e6);
            }
            double mweights = (double) IN * OUT / 1e6;
            System.out.printf("%d-bit [%d, %d] g%d (%.1f M weights), best of %d%n", bits, OUT, IN, GROUP, mweights,
                    rounds);
            System.out.printf("  baseline widen codes  %8.1f ms%n", baseline);
            System.out.printf("  pack qweight          %8.1f ms  (%.0f M codes/s, %.1fx baseline)%n", pack,
                    mweights / pack * 1e3, pack / baseline);
            System.out.printf("  unpack qweight        %8.1f ms  (%.0f M codes/s, %.1fx baseline)%n", unpack,
                    mweights / unpack * 1e3, unpack / baseline);
            System.out.printf("  pack+unpack qzeros    %8.1f ms%n", zerosMs);
            System.out.printf("  dequantize            %8.1f ms  (%.0f M weights/s, %.1fx baseline)%n", dequant,
                    mweights / dequant * 1e3, dequant / baseline);
            System.out.println("  (checksum " + sink + ")");
        }
    }
}
