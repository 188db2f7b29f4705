import Foundation

/// A Hugging Face model directory: config.json and the weights, in one `model.safetensors`, in shards listed by
/// `model.safetensors.index.json`, or in any set of `*.safetensors` files.
public final class SafeTensorsDirectory: Sendable {
    public let path: String
    /// The files, in name order.
    public let files: [SafeTensorsFile]
    private let location: [String: Int]

    /// Whether `path` looks like a model directory (a directory holding config.json).
    public static func isModelDirectory(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
            && FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("config.json"))
    }

    public init(path: String) throws(SafeTensorsError) {
        self.path = path
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .notAModelDirectory(path: path, reason: "it is not a directory")
        }
        func join(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
        let indexPath = join("model.safetensors.index.json")
        var files: [SafeTensorsFile] = []
        var location: [String: Int] = [:]
        if fm.fileExists(atPath: indexPath) {
            // Sharded: the index maps every tensor to its shard; each shard must exist and hold its tensors.
            guard let data = fm.contents(atPath: indexPath),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let map = object["weight_map"] as? [String: String] else {
                throw .badHeader(path: indexPath, reason: "no weight_map object of tensor name -> shard file")
            }
            var shardIndex: [String: Int] = [:]
            for (tensor, shard) in map.sorted(by: { $0.key < $1.key }) {
                guard !shard.contains("/") else { throw .missingShard(index: indexPath, shard: shard, tensor: tensor) }
                if shardIndex[shard] == nil {
                    guard fm.fileExists(atPath: join(shard)) else { throw .missingShard(index: indexPath, shard: shard, tensor: tensor) }
                    shardIndex[shard] = files.count
                    files.append(try SafeTensorsFile(path: join(shard)))
                }
                let i = shardIndex[shard]!
                guard files[i].tensors[tensor] != nil else {
                    throw .missingTensor(directory: join(shard), tensor: tensor)
                }
                location[tensor] = i
            }
        } else {
            let names = ((try? fm.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".safetensors") }.sorted()
            guard !names.isEmpty else {
                throw .notAModelDirectory(path: path, reason: "it has no *.safetensors files (PyTorch .bin checkpoints are not read; convert them with safetensors' convert script)")
            }
            for name in names {
                let file = try SafeTensorsFile(path: join(name))
                for tensor in file.tensors.keys {
                    if let other = location[tensor] {
                        throw .duplicateTensor(tensor: tensor, first: files[other].path, second: file.path)
                    }
                    location[tensor] = files.count
                }
                files.append(file)
            }
        }
        self.files = files
        self.location = location
    }

    public var tensorNames: [String] { location.keys.sorted() }

    public func has(_ name: String) -> Bool { location[name] != nil }

    /// The file holding `name` and its entry.
    public func tensor(_ name: String) throws(SafeTensorsError) -> (file: SafeTensorsFile, info: SafeTensorInfo) {
        guard let i = location[name], let info = files[i].tensors[name] else { throw .missingTensor(directory: path, tensor: name) }
        return (files[i], info)
    }

    /// The tensor as float32, after checking its shape (PyTorch order, outermost first).
    public func floats(_ name: String, shape: [Int]) throws(SafeTensorsError) -> [Float] {
        let (file, info) = try tensor(name)
        guard info.shape == shape || (shape.count == 1 && info.elementCount == shape[0] && info.shape.count <= 1) else {
            throw .shapeMismatch(path: file.path, tensor: name, expected: shape, found: info.shape)
        }
        return file.floats(info)
    }

    /// The parsed config.json.
    public func configuration() throws(SafeTensorsError) -> [String: Any] {
        let configPath = (path as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw .notAModelDirectory(path: path, reason: "config.json is missing or unreadable")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw .badConfig(path: configPath, key: "(file)", reason: "is not a JSON object")
        }
        return object
    }
}
