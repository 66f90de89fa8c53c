// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "transfer-engine",
    products: [
        .library(name: "TransferEngine", targets: ["TransferEngine"]),
        .executable(name: "transferd", targets: ["transferd"]),
        .executable(name: "transfer-send", targets: ["transfer-send"]),
    ],
    targets: [
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CLibArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CMicroHTTPD", pkgConfig: "libmicrohttpd", providers: [.apt(["libmicrohttpd-dev"])]),
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        .systemLibrary(name: "CISAL", pkgConfig: "libisal", providers: [.apt(["libisal-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // Typed wrappers for variadic C functions and macros Swift cannot call directly.
        .target(name: "CTransferShims", dependencies: ["CCurl", "CMicroHTTPD", "CISAL"]),
        .target(
            name: "TransferEngine",
            dependencies: ["COpenSSL", "CLibArchive", "CCurl", "CMicroHTTPD", "CYAML", "CISAL", "CZstd", "CTransferShims"],
            swiftSettings: [.enableUpcomingFeature("ExistentialAny")]
        ),
        .executableTarget(name: "transferd", dependencies: ["TransferEngine"]),
        .executableTarget(name: "transfer-send", dependencies: ["TransferEngine"]),
        .testTarget(
            name: "TransferEngineTests",
            dependencies: ["TransferEngine"],
            resources: [.copy("Fixtures")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
