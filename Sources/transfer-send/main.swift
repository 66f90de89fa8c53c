import TransferEngine

#if canImport(Glibc)
import Glibc
#endif

// Thin entry point: all parsing and behaviour live in TransferEngine.SendCommand.
ProcessSetup.configureMemory()
ProcessSetup.raiseOpenFileLimit()
SignalWaiter.blockTerminationSignals()
exit(SendCommand.main(Array(CommandLine.arguments.dropFirst())))
