using System.Text.Json;
using System.Text.Json.Serialization;
using Throughput.Contracts;

namespace Throughput.Serving;

/// <summary>The admission messages as contracts/schemas/admission-limit.v1.json has them: camelCase, states as strings.</summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, UseStringEnumConverter = true)]
[JsonSerializable(typeof(AdmissionLimitChanged))]
[JsonSerializable(typeof(AdmissionLimitChanged[]))]
[JsonSerializable(typeof(AdmissionQuery))]
internal sealed partial class AdmissionJson : JsonSerializerContext;
