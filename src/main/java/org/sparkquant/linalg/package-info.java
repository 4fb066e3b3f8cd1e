/**
 * Dense linear algebra on ND4J's bundled OpenBLAS that is right with every kernel set it may pick.
 *
 * <ul>
 *   <li>{@link org.sparkquant.linalg.UpperCholesky}: LAPACK's potrf/trtri (upper) from gemm and syrk, float or
 *       double, because the bundled build's own are wrong with its AVX-512 (SkylakeX) kernels.</li>
 *   <li>{@link org.sparkquant.linalg.OpenBlas}: the kernel set in use, and the once-per-JVM start-up check of the
 *       routines this project calls, which fails with the fix ({@code OPENBLAS_CORETYPE=Haswell}).</li>
 * </ul>
 */
package org.sparkquant.linalg;
