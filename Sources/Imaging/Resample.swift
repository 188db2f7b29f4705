/// Pillow's `Image.resize(..., BICUBIC)` for 8-bit RGB, to the bit: separable convolution (horizontal
/// pass first, rounded to 8 bits, then vertical) with the bicubic kernel (a = -0.5) widened by the scale
/// when shrinking (antialiasing), coefficients normalised per output pixel and held in 22-bit fixed
/// point. Written from Pillow's documented algorithm (libImaging/Resample.c) so that pixel values match
/// transformers' PIL image processors exactly.
public enum Resample {
    static let precisionBits = 32 - 8 - 2

    static func bicubic(_ x: Double) -> Double {
        let a = -0.5, x = abs(x)
        if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0
    }

    /// For each output index: the first input index, the count of inputs, and their fixed-point weights.
    struct Coefficients {
        var size: Int
        var first: [Int]
        var count: [Int]
        var weights: [Int32]   // size x kernelSize
    }

    static func coefficients(input: Int, output: Int) -> Coefficients {
        let support = 2.0
        let scale = Double(input) / Double(output)
        let filterScale = max(scale, 1)
        let width = support * filterScale
        let kernelSize = Int(width.rounded(.up)) * 2 + 1
        var c = Coefficients(size: kernelSize, first: [], count: [], weights: [Int32](repeating: 0, count: output * kernelSize))
        var k = [Double](repeating: 0, count: kernelSize)
        for o in 0 ..< output {
            let center = (Double(o) + 0.5) * scale
            let inverse = 1 / filterScale
            let lo = max(Int(center - width + 0.5), 0)
            let hi = min(Int(center + width + 0.5), input)
            let n = hi - lo
            var total = 0.0
            for i in 0 ..< n {
                k[i] = bicubic((Double(i + lo) - center + 0.5) * inverse)
                total += k[i]
            }
            for i in 0 ..< n {
                let w = total != 0 ? k[i] / total : k[i]
                let fixed = w * Double(1 << precisionBits)
                c.weights[o * kernelSize + i] = Int32(w < 0 ? (-0.5 + fixed) : (0.5 + fixed))
            }
            c.first.append(lo)
            c.count.append(n)
        }
        return c
    }

    @inline(__always)
    static func clip8(_ v: Int) -> UInt8 {
        if v >= (1 << precisionBits) << 8 { return 255 }
        if v <= 0 { return 0 }
        return UInt8(v >> precisionBits)
    }

    /// The image resized to `width` x `height` as Pillow's bicubic filter does.
    public static func bicubic(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        precondition(width > 0 && height > 0)
        if width == image.width && height == image.height { return image }
        let horizontal = coefficients(input: image.width, output: width)
        let vertical = coefficients(input: image.height, output: height)
        let half = 1 << (precisionBits - 1)
        var source = image.pixels
        var sourceWidth = image.width
        var firstRow = 0
        var rows = image.height
        if width != image.width {
            // Only the rows the vertical pass reads.
            firstRow = vertical.first[0]
            let lastRow = vertical.first[height - 1] + vertical.count[height - 1]
            rows = lastRow - firstRow
            var out = [UInt8](repeating: 0, count: width * rows * 3)
            for y in 0 ..< rows {
                let inRow = (y + firstRow) * image.width * 3
                for x in 0 ..< width {
                    let k = x * horizontal.size, lo = horizontal.first[x]
                    var s0 = half, s1 = half, s2 = half
                    for i in 0 ..< horizontal.count[x] {
                        let w = Int(horizontal.weights[k + i]), p = inRow + (lo + i) * 3
                        s0 += Int(source[p]) * w
                        s1 += Int(source[p + 1]) * w
                        s2 += Int(source[p + 2]) * w
                    }
                    let o = (y * width + x) * 3
                    out[o] = clip8(s0)
                    out[o + 1] = clip8(s1)
                    out[o + 2] = clip8(s2)
                }
            }
            source = out
            sourceWidth = width
        }
        guard height != image.height else {
            return RGBImage(width: width, height: height, pixels: source, format: image.format)
        }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0 ..< height {
            let k = y * vertical.size, lo = vertical.first[y] - firstRow
            for x in 0 ..< width {
                var s0 = half, s1 = half, s2 = half
                for i in 0 ..< vertical.count[y] {
                    let w = Int(vertical.weights[k + i]), p = ((lo + i) * sourceWidth + x) * 3
                    s0 += Int(source[p]) * w
                    s1 += Int(source[p + 1]) * w
                    s2 += Int(source[p + 2]) * w
                }
                let o = (y * width + x) * 3
                out[o] = clip8(s0)
                out[o + 1] = clip8(s1)
                out[o + 2] = clip8(s2)
            }
        }
        _ = rows
        return RGBImage(width: width, height: height, pixels: out, format: image.format)
    }
}
