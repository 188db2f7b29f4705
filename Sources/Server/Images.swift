import AsyncHTTPClient
import Foundation
import Imaging
import NIOCore
import NIOHTTP1
import Serving
#if canImport(Glibc)
import Glibc
#endif

/// How the server takes images in chat messages: how many and how large, and where they may come from.
/// Data URIs always; local files only under `localDirectory`; http(s) only from `allowedDomains`.
public struct ImagePolicy: Sendable, Equatable {
    public var maxImagesPerRequest: Int
    /// Encoded bytes of one image (a data URI's payload, a file, a download).
    public var maxImageBytes: Int
    /// Checked against the size an image declares, before decoding (decompression bombs).
    public var decodeLimits: ImageDecodeLimits
    /// `file://` URLs are read only under this directory; nil: refused.
    public var localDirectory: String?
    /// Hosts (and their subdomains) http(s) image URLs may name; empty: remote URLs are refused.
    public var allowedDomains: [String]
    /// The image processor's pixel budget (both temporal copies counted) when a request gives none; nil: the model's.
    public var maxPixels: Int?
    public var minPixels: Int?
    /// Seconds to wait for a remote image.
    public var fetchTimeoutSeconds: Double

    public init(maxImagesPerRequest: Int = 10, maxImageBytes: Int = 20 << 20, decodeLimits: ImageDecodeLimits = .default,
                localDirectory: String? = nil, allowedDomains: [String] = [], maxPixels: Int? = nil, minPixels: Int? = nil,
                fetchTimeoutSeconds: Double = 10) {
        self.maxImagesPerRequest = maxImagesPerRequest
        self.maxImageBytes = maxImageBytes
        self.decodeLimits = decodeLimits
        self.localDirectory = localDirectory
        self.allowedDomains = allowedDomains
        self.maxPixels = maxPixels
        self.minPixels = minPixels
        self.fetchTimeoutSeconds = fetchTimeoutSeconds
    }

    func allows(host: String) -> Bool {
        let h = host.lowercased()
        return allowedDomains.contains { d in
            let d = d.lowercased()
            return h == d || h.hasSuffix("." + d)
        }
    }
}

/// Reading the images of a chat request: each `image_url` part's URL to decoded RGB, with errors that name the
/// message and the part (`messages[2].content[0]`).
enum ImageInputs {
    /// An image_url part's URL, from `{"url": "..."}` or a plain string.
    static func url(of part: FieldReader, param: String) throws(APIError) -> String {
        guard let value = part.value("image_url") else {
            throw .invalidRequest("\(param) has type 'image_url' but no 'image_url' field.", param: param)
        }
        switch value {
        case .string(let s): return s
        case .object:
            guard let url = try FieldReader(value).string("url") else {
                throw .invalidRequest("\(param).image_url.url is required.", param: "\(param).image_url.url")
            }
            return url
        default:
            throw .invalidRequest("\(param).image_url must be an object with a 'url'.", param: "\(param).image_url")
        }
    }

    /// The client for remote images: no redirects (an allowed host must not forward the fetch elsewhere).
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow)
        configuration.timeout = .init(connect: .seconds(5))
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// The http(s) image URLs of a chat body that the policy allows, to be fetched before the request is read; at most
    /// `maxImagesPerRequest` (a request with more is refused when it is read).
    static func remoteURLs(in body: JSON, policy: ImagePolicy) -> [String] {
        guard !policy.allowedDomains.isEmpty, case .object(let top) = body,
              let messages = top.first(where: { $0.0 == "messages" })?.1, case .array(let list) = messages else { return [] }
        var urls: [String] = []
        for message in list {
            guard case .object(let m) = message, let content = m.first(where: { $0.0 == "content" })?.1, case .array(let parts) = content else { continue }
            for part in parts {
                guard let reader = try? FieldReader(part), (try? reader.string("type")) == "image_url",
                      let url = try? self.url(of: reader, param: ""), let parsed = URL(string: url),
                      ["http", "https"].contains(parsed.scheme?.lowercased() ?? ""), let host = parsed.host, policy.allows(host: host) else { continue }
                urls.append(url)
                if urls.count >= policy.maxImagesPerRequest { return urls }
            }
        }
        return urls
    }

    /// Downloads allowed remote images (bounded in size and time). A failure is the request's error, naming the URL.
    static func fetch(_ urls: [String], policy: ImagePolicy) async throws(APIError) -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for url in Set(urls) {
            do {
                var request = HTTPClientRequest(url: url)
                request.method = .GET
                let response = try await client.execute(request, timeout: .milliseconds(Int64(policy.fetchTimeoutSeconds * 1000)))
                guard response.status == .ok else {
                    throw APIError.invalidRequest("The image at \(url) could not be fetched: HTTP \(response.status.code).", param: "messages")
                }
                let body = try await response.body.collect(upTo: policy.maxImageBytes)
                out[url] = Array(buffer: body)
            } catch let error as APIError {
                throw error
            } catch {
                throw .invalidRequest("The image at \(url) could not be fetched (\(error)); images are at most \(policy.maxImageBytes) bytes.", param: "messages")
            }
        }
        return out
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The file's bytes if it is a regular file (not a FIFO or a device) of at most `limit` bytes. Opened without
    /// following a symlink at the last step and without blocking (a FIFO swapped in reads as empty), and never read
    /// past `limit`.
    static func readRegularFile(_ path: String, limit: Int) -> [UInt8]? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              attributes[.type] as? FileAttributeType == .typeRegular,
              let size = attributes[.size] as? Int, size <= limit else { return nil }
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        guard let data = try? handle.read(upToCount: limit + 1), !data.isEmpty, data.count <= limit else { return nil }
        return [UInt8](data)
    }

    /// The decoded image an `image_url` part names.
    static func image(url: String, param: String, policy: ImagePolicy, fetched: [String: [UInt8]]) throws(APIError) -> RGBImage {
        let bytes: [UInt8]
        var declared: String?
        if url.hasPrefix("data:") {
            guard let comma = url.firstIndex(of: ",") else {
                throw .invalidRequest("\(param): a data URI needs a ',' before its payload.", param: param)
            }
            let header = url[url.index(url.startIndex, offsetBy: 5) ..< comma].lowercased()
            let parts = header.split(separator: ";").map(String.init)
            declared = parts.first ?? ""
            guard parts.contains("base64") else {
                throw .invalidRequest("\(param): only base64 data URIs are taken (data:image/png;base64,...).", param: param)
            }
            let payload = url[url.index(after: comma)...]
            guard payload.utf8.count / 4 * 3 <= policy.maxImageBytes + 3 else {
                throw .invalidRequest("\(param): the image is over \(policy.maxImageBytes) bytes.", param: param)
            }
            guard let data = Data(base64Encoded: String(payload), options: .ignoreUnknownCharacters) else {
                throw .invalidRequest("\(param): the data URI's payload is not valid base64.", param: param)
            }
            bytes = [UInt8](data)
        } else if let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), scheme == "http" || scheme == "https" {
            guard let host = parsed.host, policy.allows(host: host) else {
                throw .invalidRequest("\(param): remote image URLs are off on this server (images.allowed_domains); send the image as a data URI.", param: param)
            }
            guard let downloaded = fetched[url] else {
                throw .invalidRequest("\(param): the image at \(url) was not fetched.", param: param)
            }
            bytes = downloaded
        } else if url.hasPrefix("file://") {
            guard let root = policy.localDirectory else {
                throw .invalidRequest("\(param): local image files are off on this server (images.local_directory).", param: param)
            }
            // The path as the kernel resolves it (realpath: symlinks and `..` gone), under the directory as resolved.
            guard let parsed = URL(string: url), parsed.host == nil || parsed.host == "" || parsed.host == "localhost" else {
                throw .invalidRequest("\(param): a file:// URL names a local path (file:///dir/image.png).", param: param)
            }
            let path = parsed.path
            guard let resolved = Self.realPath(path), let base = Self.realPath(root), resolved.hasPrefix(base + "/") else {
                throw .invalidRequest("\(param): local images must be existing files under images.local_directory.", param: param)
            }
            guard let data = Self.readRegularFile(resolved, limit: policy.maxImageBytes) else {
                throw .invalidRequest("\(param): \(path) is not a readable regular file of at most \(policy.maxImageBytes) bytes.", param: param)
            }
            bytes = data
        } else {
            throw .invalidRequest("\(param): the image URL must be a data URI (data:image/png;base64,...), an allowed http(s) URL or an allowed file:// path.", param: param)
        }
        guard bytes.count <= policy.maxImageBytes else {
            throw .invalidRequest("\(param): the image is over \(policy.maxImageBytes) bytes.", param: param)
        }
        if let declared {
            let sniffed = ImageDecoder.sniff(bytes)
            let expected: RGBImage.Format? = switch declared {
            case "image/png": .png
            case "image/jpeg", "image/jpg": .jpeg
            default: nil
            }
            guard let expected else {
                throw .invalidRequest("\(param): media type '\(declared)' is not taken; send image/png or image/jpeg.", param: param)
            }
            guard sniffed == expected else {
                let found = sniffed.map { "a \($0.rawValue)" } ?? "not an image"
                throw .invalidRequest("\(param): the data URI says \(declared) but its content is \(found).", param: param)
            }
        }
        do {
            return try ImageDecoder.decode(bytes, limits: policy.decodeLimits)
        } catch {
            throw .invalidRequest("\(param): \(error.description)", param: param)
        }
    }
}
